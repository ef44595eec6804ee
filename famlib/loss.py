"""A causal-LM cross-entropy through the tied output head that never holds the full-vocabulary logits.

Why: Gemma 3's head has 262,208 outputs. The plain path (``model(input_ids=x, labels=x).loss``) makes the
logits of a whole micro-batch at once: at the paper's 4 x 2,048 tokens that is 2.1G values, held as bf16
logits, their fp32 upcast and fp32 log-probabilities (about 26 GB, more than the rest of the activations
together; ``famlib memory --scale paper``). :func:`chunked_causal_lm_loss` takes the final hidden states
instead and goes through the head ``chunk`` tokens at a time: each chunk's logits exist only while that chunk
is processed (``chunk x vocab`` values, 1.07G bytes in fp32 at 1,024 tokens).

How: a custom autograd function computes the loss *and* its gradients in the forward pass, chunk by chunk
(``softmax - onehot`` is known as soon as a chunk's log-sum-exp is), and its backward only scales them by
the incoming gradient. So nothing is recomputed, and what it keeps for the backward is one gradient the size
of the hidden states and one the size of the head, in its dtype (the head's gradient exists anyway after the
backward; it is accumulated in fp32 across chunks and rounded once).
Under ``torch.no_grad`` (validation) no gradient is computed at all.

Numerics: the head's matrix products run in ``compute_dtype`` (bf16 where training uses bf16 autocast, as the
plain path does under autocast), the log-softmax always in fp32 (the plain path upcasts too), and the loss is
the mean over the target tokens, as transformers' ``ForCausalLMLoss`` computes it. In fp32 it equals the
plain loss and gradients to rounding (tests/test_train.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

IGNORE_INDEX = -100  # transformers' label for "no target here"
# Rows of the head's gradient formed per product: adding a bf16 product into the fp32 gradient widens it first,
# so a whole-head product would briefly take 6 bytes per head parameter (4 GB for gemma-3-4b) on top.
_VOCAB_BLOCK = 16384


def _chunk_logits(h: torch.Tensor, w: torch.Tensor, softcap: Optional[float]):
    """fp32 logits of one chunk, and tanh(z / cap) when the model soft-caps its logits (for the gradient)."""
    z = (h @ w.T).float()
    if softcap is None:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


class _LinearCrossEntropy(torch.autograd.Function):
    """``mean_i CE(softcap(h_i W^T), y_i)`` over the targets ``y_i != -100``, gradients made in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, softcap, compute_dtype, grad_enabled):
        # needs_input_grad is True under torch.no_grad too, hence grad_enabled from outside
        need_h, need_w = grad_enabled and ctx.needs_input_grad[0], grad_enabled and ctx.needs_input_grad[1]
        valid = targets != IGNORE_INDEX
        count = valid.sum().clamp(min=1).to(torch.float32)
        w = weight.to(compute_dtype)
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk].to(compute_dtype)
            y = targets[start:start + chunk]
            ok = valid[start:start + chunk]
            z, t = _chunk_logits(h, w, softcap)
            lse = torch.logsumexp(z, dim=-1)
            safe_y = torch.where(ok, y, 0)
            picked = z.gather(1, safe_y[:, None])[:, 0]
            total += ((lse - picked) * ok).sum()
            if need_h or need_w:
                g = z.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                g[torch.arange(len(y), device=g.device), safe_y] -= 1.0
                g.mul_((ok.to(g.dtype) / count)[:, None])
                if t is not None:
                    g.mul_(1.0 - t * t)  # d(cap tanh(z/cap))/dz
                g = g.to(compute_dtype)
                if need_h:
                    grad_h[start:start + chunk] = (g @ w).to(hidden.dtype)
                if need_w:  # by blocks of the vocabulary: the widened product of one block at a time
                    for v in range(0, g.shape[1], _VOCAB_BLOCK):
                        grad_w[v:v + _VOCAB_BLOCK].add_(g[:, v:v + _VOCAB_BLOCK].T @ h)
        if grad_w is not None:  # kept in the weight's dtype: the fp32 accumulator goes now, not in the backward
            grad_w = grad_w.to(weight.dtype)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
        ctx.has = (need_h, need_w)
        return total / count

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        need_h, need_w = ctx.has
        grad_h = saved.pop(0) * grad_out if need_h else None  # a 0-dim factor keeps grad_h's dtype
        grad_w = saved.pop(0) * grad_out if need_w else None
        return grad_h, grad_w, None, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                         softcap: Optional[float] = None, compute_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Mean cross-entropy of ``softcap(hidden @ weight.T)`` against ``targets``, ``chunk`` rows at a time.

    Args:
        hidden: ``[N, H]`` final hidden states (after the final norm).
        weight: ``[V, H]`` the output head (tied to the embeddings in Gemma 3).
        targets: ``[N]`` token ids; ``-100`` rows count for nothing.
        chunk: rows per pass through the head (memory: ``chunk x V`` fp32 values, plus a bf16 copy).
        softcap: the model's ``final_logit_softcapping`` (None: none).
        compute_dtype: dtype of the head's matrix products; None = ``weight.dtype``.
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"linear_cross_entropy: chunk={chunk!r}; allowed: a positive number of tokens")
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, softcap, compute_dtype or weight.dtype,
                                    torch.is_grad_enabled())


def token_nll(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
              softcap: Optional[float] = None, compute_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Per-target negative log-likelihood (nats, fp32) of ``softcap(hidden @ weight.T)``, ``chunk`` rows at a time.

    The evaluation twin of :func:`linear_cross_entropy` (same logits, same fp32 log-softmax), without the mean
    and without gradients: ``[N]`` values, ``0`` where the target is ``-100``. Memory: ``chunk x V`` fp32
    values at a time, whatever ``N`` is.
    """
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"token_nll: chunk={chunk!r}; allowed: a positive number of tokens")
    dtype = compute_dtype or weight.dtype
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    with torch.no_grad():
        w = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk):
            y = targets[start:start + chunk]
            ok = y != IGNORE_INDEX
            z, _ = _chunk_logits(hidden[start:start + chunk].to(dtype), w, softcap)
            picked = z.gather(1, torch.where(ok, y, 0)[:, None])[:, 0]
            out[start:start + chunk] = (torch.logsumexp(z, dim=-1) - picked) * ok
    return out


@contextlib.contextmanager
def head_bypassed(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model(...)`` returns the final hidden states as its ``logits`` (no head, no soft-cap).

    The forward still goes through the model's own ``__call__`` (and so through DDP's and accelerate's wrappers:
    gradient synchronisation, autocast), only the head's ``forward`` is replaced on its instance; its weight
    stays a parameter of the model, so names, optimiser state and tying are unchanged.
    """
    head = model.get_output_embeddings()
    config = model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    own = head.__dict__.get("forward")  # an instance-level forward someone else set (a hook library)
    head.forward = lambda hidden_states: hidden_states
    config.final_logit_softcapping = None
    try:
        yield
    finally:
        if own is None:
            del head.forward  # back to the class's forward
        else:
            head.forward = own
        config.final_logit_softcapping = softcap


def chunked_causal_lm_loss(model: torch.nn.Module, raw: torch.nn.Module, input_ids: torch.Tensor, chunk: int,
                           compute_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The loss of ``model(input_ids=x, labels=x).loss``, through the head ``chunk`` tokens at a time.

    ``model`` is what the forward is called on (a DDP / accelerate wrapper is fine), ``raw`` the transformers
    model inside it (its head and config). Position ``t`` predicts token ``t + 1``; the mean runs over the
    ``B x (S - 1)`` targets, as transformers' loss does for unpadded rows.
    """
    softcap = getattr(raw.config, "final_logit_softcapping", None)
    with head_bypassed(raw):
        hidden = model(input_ids=input_ids, use_cache=False).logits
    weight = raw.get_output_embeddings().weight
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = input_ids[:, 1:].reshape(-1)
    return linear_cross_entropy(h, weight, y, chunk, softcap, compute_dtype)

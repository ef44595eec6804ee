"""``l2sp``: Layer-Range L2-SP, one model per family, every parameter trains and drift from the base is
penalised per layer group (paper section 3.2: lambda 0.001 / 0.05 / 0.001 for first / middle / last).

:class:`LayerRangeL2SP` is the regulariser. torch is imported inside its methods, not here, because the
registry (read by config validation and ``famlib plan``) imports this module.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from famlib.layers import decoder_layers, l2sp_lambda
from famlib.strategies.spec import Regulariser, Strategy

if TYPE_CHECKING:
    import torch

    from famlib.config import L2SPConfig, Params


class LayerRangeL2SP:
    """Layer-Range L2-SP (Li et al. 2018, per-group strengths as in the paper), as a training regularizer.

    The penalty ``R = sum_p lambda_p ||p - p0||^2`` is never built through autograd: its gradient
    ``2 lambda_p (p - p0)`` is added to ``p.grad`` directly, with fused ``_foreach`` passes per lambda,
    which is exactly what adding ``R`` to the loss would give. The anchor ``p0`` is a copy of the weights at
    construction (the base model), kept once in ``dtype`` (None: the parameters' dtype), moved to their device
    on first use. :func:`build` keeps them in the dtype the base checkpoint is stored in (``model.dtype``:
    bf16 at the paper scale), which holds the base's values exactly: an fp32 copy of bf16 weights would double
    the anchors' memory (15.5 GB instead of 7.8 for gemma-3-4b's 3.9B parameters) and add nothing. Parameters with lambda 0 or
    ``requires_grad=False`` are not anchored and cost nothing.

    The penalty's gradient is formed ``CHUNK_BYTES`` of parameters at a time, so its temporaries (the
    differences, and anchors widened to the parameters' dtype) stay small beside the model.
    """

    CHUNK_BYTES = 256 << 20

    def __init__(self, model: "torch.nn.Module", lambdas: "L2SPConfig", first: int, last: int, dtype=None):
        num_layers = len(decoder_layers(model))
        groups: dict[float, list[str]] = defaultdict(list)
        for name, p in model.named_parameters():
            lam = l2sp_lambda(name, lambdas, num_layers, first, last)
            if lam > 0 and p.requires_grad:
                groups[lam].append(name)
        self.lambdas = dict(sorted(groups.items()))
        named = dict(model.named_parameters())
        self.anchors = {lam: [named[n].detach().to(dtype or named[n].dtype, copy=True) for n in names]
                        for lam, names in self.lambdas.items()}
        self.anchored = sum(a.numel() for anchors in self.anchors.values() for a in anchors)

    def _params(self, model: "torch.nn.Module") -> dict[float, list["torch.nn.Parameter"]]:
        named = dict(model.named_parameters())
        return {lam: [named[n] for n in names] for lam, names in self.lambdas.items()}

    def penalty_and_grad(self, model: "torch.nn.Module") -> float:
        """Add the penalty's gradient to every anchored parameter's ``.grad``; return the penalty value."""
        import torch

        total = 0.0
        with torch.no_grad():
            for lam, params in self._params(model).items():
                anchors = self.anchors[lam]
                if anchors[0].device != params[0].device:  # train() moves the model after we were built
                    anchors = self.anchors[lam] = [a.to(params[0].device) for a in anchors]
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                norms = []
                for i, j in self._chunks(params):
                    ps = params[i:j]
                    wide = [a.to(p.dtype) for p, a in zip(ps, anchors[i:j])]  # no copy when the dtypes agree
                    diffs = torch._foreach_sub([p.detach() for p in ps], wide)
                    norms += torch._foreach_norm(diffs)
                    torch._foreach_add_([p.grad for p in ps], diffs, alpha=2.0 * lam)
                    del diffs, wide
                total += lam * float(torch.stack(norms).float().pow(2).sum())
        return total

    def _chunks(self, params: list) -> list[tuple[int, int]]:
        """``[(i, j), ...]``: consecutive slices of ``params`` of about ``CHUNK_BYTES`` each (at least one tensor)."""
        out, start, size = [], 0, 0
        for k, p in enumerate(params):
            if k > start and size + p.numel() * p.element_size() > self.CHUNK_BYTES:
                out.append((start, k))
                start, size = k, 0
            size += p.numel() * p.element_size()
        return out + [(start, len(params))] if params else out

    def penalty(self, model: "torch.nn.Module") -> float:
        """The penalty's value alone (no gradient), e.g. for a report."""
        import torch

        with torch.no_grad():
            return sum(lam * float(sum(((p.detach() - a.to(p.device)) ** 2).sum()
                                       for p, a in zip(params, self.anchors[lam])))
                       for lam, params in self._params(model).items())


def build(params: "Params", model: "torch.nn.Module") -> LayerRangeL2SP:
    """The regulariser of ``params`` (``l2sp.*`` lambdas, the layer split) anchored at ``model``'s weights.

    Anchors in ``params.model.dtype``, the dtype the base is stored in: exact, and half the bytes of fp32 at
    the paper scale.
    """
    import torch

    return LayerRangeL2SP(model, params.l2sp, params.layers.first, params.layers.last,
                          dtype=getattr(torch, params.model.dtype))


L2SP = Regulariser(name="l2sp", label="Layer-Range L2-SP (l2sp.*)", sections=("l2sp",), build=build)

STRATEGY = Strategy(
    name="l2sp", label="L2-SP", title="Layer-Range L2-SP", per_family=True, training="family", data="family",
    regulariser=L2SP,
    outside="trainable, anchored with L2SPConfig.outside (default 0, the paper's formula; 'first' gives them the "
            "first group's lambda, as the authors' code does)",
    paper=True, default=True, color="#55A868", marker="D",
)

"""Model soup: the (weighted) average of every tensor of several models (Expert Soup, Freeze soup).

Every parameter is averaged, outside ones included (``famlib.strategies.rules.surgery_groups('soup')``). The
average is a running weighted mean accumulated in float32 (float64 for float64 inputs) and written in
the inputs' dtype: ``m_k = m_{k-1} + (w_k / W_k) (x_k - m_{k-1})`` with ``W_k`` the running total, so
inputs are read one at a time, and a soup of identical models returns them bit for bit (x - m = 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from famlib.strategies.rules import surgery_groups
from famlib.surgery.base import Load, SurgeryMethod, compute_dtype, require_equal
from famlib.surgery.checks import check_weights

if TYPE_CHECKING:
    import torch


def soup_tensors(tensors: Iterable["torch.Tensor"], weights: Sequence[float]) -> "torch.Tensor":
    """Weighted mean of same-shaped float tensors, accumulated in float32, returned in their dtype.

    Args:
        tensors: consumed one at a time (a generator keeps one input in memory).
        weights: one non-negative weight per tensor, positive total; zero-weight tensors are skipped.

    Returns:
        ``sum(w_i x_i) / sum(w_i)`` as a new tensor (never one of the inputs).
    """
    acc, total, dtype = None, 0.0, None
    for t, w in zip(tensors, weights, strict=True):
        if w == 0:
            continue
        total += w
        if acc is None:
            dtype = t.dtype
            acc = t.to(compute_dtype(dtype), copy=True)  # a copy: the in-place updates must not touch inputs
        else:
            acc.lerp_(t.to(acc.dtype), w / total)  # in place: no temporary the size of the tensor
    if acc is None:
        raise ValueError("soup_tensors: no tensor with a positive weight")  # internal: weights are checked
    return acc.to(dtype)


class Soup(SurgeryMethod):
    name = "soup"
    summary = "uniform or weighted average of several models (Expert Soup)"
    roles = None
    needs_split = False
    option_names = ("weights",)

    def options(self, n: int, weights: Optional[Any] = None, **extra: Any) -> dict[str, Any]:
        self._unknown(extra)
        self.check_count(n)
        ws = check_weights(weights, n)
        total = sum(ws)
        return {"weights": list(ws), "normalised_weights": [w / total for w in ws]}

    def changed_groups(self, opts: dict[str, Any]) -> tuple[str, ...]:
        return surgery_groups("soup")

    def tensor(self, name: str, group: Optional[str], load: Load, opts: dict[str, Any]) -> "torch.Tensor":
        ws = opts["weights"]
        used = [i for i, w in enumerate(ws) if w > 0]
        if not load(used[0]).is_floating_point():
            return require_equal(name, [load(i) for i in range(len(ws))], self.role_names(len(ws)), self.name)
        # No reference to an input may outlive its turn: a tensor read from a file keeps its pages resident
        # while referenced, so holding the first one through the loop would cost one more tensor of memory.
        return soup_tensors((load(i) for i in used), [ws[i] for i in used])

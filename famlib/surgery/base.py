"""What a surgery method is: a name, its input roles, validated options, and one pure function per tensor.

The driver (:mod:`famlib.surgery.driver`) opens the inputs, checks them, and asks the method for each
output tensor through :meth:`SurgeryMethod.tensor`, handing it the tensor's layer group and a ``load(i)``
that reads input ``i``'s copy of that tensor only when called. Methods never see a path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Sequence

from famlib.surgery.errors import SurgeryError

if TYPE_CHECKING:
    import torch

Load = Callable[[int], "torch.Tensor"]


class SurgeryMethod:
    """Base class of the registered methods (see :mod:`famlib.surgery.registry`)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    roles: ClassVar[Optional[tuple[str, ...]]] = None  # fixed input roles, or None for "any number of models"
    needs_split: ClassVar[bool] = True  # whether tensors are told their layer group
    # The input whose config and tokenizer the output gets, and whose values unchanged tensors keep
    # (None: the first input).
    reference_role: ClassVar[Optional[str]] = None
    option_names: ClassVar[tuple[str, ...]] = ()

    def role_names(self, n: int) -> list[str]:
        """Input roles for messages and the record (``tuned``, ``base``; ``model 1``, ``model 2``, ...)."""
        return list(self.roles) if self.roles else [f"model {i + 1}" for i in range(n)]

    def check_count(self, n: int) -> None:
        if self.roles and n != len(self.roles):
            raise SurgeryError(f"{self.name} takes {len(self.roles)} models ({', '.join(self.roles)}), got {n}")
        if not self.roles and n < 1:
            raise SurgeryError(f"{self.name} needs at least one model")

    def options(self, n: int, **options: Any) -> dict[str, Any]:
        """Validated, normalised options (recorded beside the output). Raises SurgeryError."""
        raise NotImplementedError

    def changed_groups(self, opts: dict[str, Any]) -> tuple[str, ...]:
        """The groups whose tensors the method changes; the others keep the reference input's values."""
        raise NotImplementedError

    def tensor(self, name: str, group: Optional[str], load: Load, opts: dict[str, Any]) -> "torch.Tensor":
        """The output tensor ``name`` (in the inputs' dtype), reading inputs through ``load``."""
        raise NotImplementedError

    def _unknown(self, options: dict[str, Any]) -> None:
        extra = sorted(set(options) - set(self.option_names))
        if extra:
            raise SurgeryError(f"{self.name}: unknown option(s) {', '.join(extra)}; "
                               f"known: {', '.join(self.option_names) or 'none'}")


def compute_dtype(dtype: "torch.dtype") -> "torch.dtype":
    """float32 for bf16/fp16/fp32 inputs, float64 for float64 (never less precise than the input)."""
    import torch

    return torch.promote_types(dtype, torch.float32)


def require_equal(name: str, tensors: Sequence["torch.Tensor"], roles: Sequence[str], operation: str) -> "torch.Tensor":
    """Integer and boolean tensors (buffers, masks) cannot be averaged: they must agree in every input."""
    import torch

    for t, role in zip(tensors[1:], roles[1:]):
        if not torch.equal(t, tensors[0]):
            raise SurgeryError(f"{operation}: {name} is a {tensors[0].dtype} tensor that differs between "
                               f"{roles[0]} and {role}; non-float tensors can only be carried over unchanged")
    return tensors[0]

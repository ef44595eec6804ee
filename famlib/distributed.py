"""Several processes, one writer: famlib under ``accelerate launch`` (or ``torchrun``).

A launcher starts N copies of the same command; each executes every line. The training loop
(:func:`famlib.train.train`) already splits each batch across them and lets only the main process write
checkpoints and the final directory. Everything around it (the corpus, the base, the packed token sets, the
model directory, the provenance, deleting the checkpoints) must also happen once, or N processes race on the
same staging directories and half-written files. The two helpers here are the one way famlib does that:

* :func:`main_only` runs a function on the main process; the others wait for it at a barrier.
* :func:`main_first` runs it on the main process first, then on the others, which find the main process's
  result cached by content and only read it (every builder famlib passes here returns early on a cache hit
  and writes nothing then).

An error on the main process is sent to the others, which raise too, instead of waiting at the barrier
until the process group's timeout. The wait uses its own gloo group with a long timeout
(``FAMLIB_WAIT_HOURS``, default 48): packing the paper scale's token sets takes hours, far beyond the
default 30 minutes, while the training's own group keeps its short one (a hung collective there is a bug).
In a single process both helpers just call the function.
"""

from __future__ import annotations

import datetime
import os
from typing import Callable, TypeVar

from famlib.errors import FamlibError

__all__ = ["DistributedError", "fsdp_requested", "launched_processes", "main_first", "main_only", "process_state"]

T = TypeVar("T")


class DistributedError(FamlibError, RuntimeError):
    """A launch that cannot work (a group of the wrong size), or the main process failed while others waited."""


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def fsdp_requested() -> bool:
    """Whether the launch asks for FSDP (``accelerate launch --use_fsdp`` sets ``ACCELERATE_USE_FSDP``)."""
    from accelerate.utils import parse_flag_from_env

    return launched_processes() > 1 and parse_flag_from_env("ACCELERATE_USE_FSDP")


def process_state():
    """accelerate's ``PartialState`` of this launch: device, rank, process group (formed on first use).

    ``ACCELERATE_USE_CPU`` is passed on explicitly: ``Accelerator()`` reads it itself, but a PartialState made
    first without it would, on a machine without GPUs, leave each process alone in a group of one. That case
    is refused, since N independent copies would all write the same files.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    launched = launched_processes()
    if launched != state.num_processes:
        raise DistributedError(f"launched as {launched} processes (WORLD_SIZE) but accelerate formed a group of "
                               f"{state.num_processes}; on a machine without GPUs use `accelerate launch --cpu` or "
                               "set ACCELERATE_USE_CPU=true")
    return state


_WAIT_GROUP = None


def _wait_group():
    """A gloo group over every process with a long timeout, only for waiting on the main process's work."""
    global _WAIT_GROUP
    if _WAIT_GROUP is None:
        import torch.distributed as dist

        hours = float(os.environ.get("FAMLIB_WAIT_HOURS") or 48)
        _WAIT_GROUP = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=hours))
    return _WAIT_GROUP


def main_only(fn: Callable[[], T], what: str) -> T | None:
    """Run ``fn`` on the main process while the others wait; return its result there, None elsewhere.

    ``what`` names the work in the error the other processes raise if it fails on the main process
    (e.g. "packing the token sets"). Every process must call this at the same point, in the same order.
    """
    if launched_processes() == 1:
        return fn()
    import torch.distributed as dist

    state = process_state()
    group = _wait_group()
    if state.is_main_process:
        error: list[str | None] = [None]
        try:
            result = fn()
        except BaseException as exc:
            error = [f"{type(exc).__name__}: {exc}"]
            dist.broadcast_object_list(error, src=0, group=group)
            raise
        dist.broadcast_object_list(error, src=0, group=group)
        return result
    error = [None]
    dist.broadcast_object_list(error, src=0, group=group)
    if error[0] is not None:
        raise DistributedError(f"the main process failed while {what} ({error[0]}); see its log")
    return None


def main_first(fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` on the main process, then on the others, which read what it wrote; return its result.

    ``fn`` must be a builder that is cached by content (it returns early and writes nothing when its output
    is already there), so the other processes' call only reads.
    """
    result = main_only(fn, what)
    if launched_processes() == 1 or process_state().is_main_process:
        return result
    return fn()

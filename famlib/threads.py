"""The CPU cores famlib may use, and torch's thread count.

One home for the thread figure: notebook kernels, the lesson, ``famlib paper --jobs N``, ``famlib launch``
and the tests all read it here. ``FAMLIB_THREADS`` is the cores a process may use: one kernel's torch threads,
or, under ``famlib paper --jobs N``, the budget that the side-by-side kernels share. More threads than
cores made runs on the project's 2-core machine 8-30x slower (torch's workers spin while they wait).

Light on purpose: torch is imported only by :func:`set_threads`, so the pipeline runner can size its kernels
without loading it.
"""

from __future__ import annotations

import contextlib
import os

from famlib.errors import ConfigError

__all__ = ["available_cores", "env_threads", "set_threads"]


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def env_threads() -> int | None:
    """``FAMLIB_THREADS`` as a positive integer; None when it is unset or empty."""
    raw = os.environ.get("FAMLIB_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:  # ConfigError is a FamlibError and a ValueError: the command line shows one line
        raise ConfigError("environment", "FAMLIB_THREADS", raw, "a positive integer (the cores famlib may use), or "
                          "unset for all the cores this process may use")
    return n


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU threads to ``n`` (None: the cores this process may use) and return the number.

    Call it once, early. For models this small, 1 thread is often fastest.
    """
    import torch

    if n is None:
        n = available_cores()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_threads: n={n!r}; allowed: a positive integer or None (all available cores)")
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op; fine if too late
        torch.set_num_interop_threads(n)
    return n

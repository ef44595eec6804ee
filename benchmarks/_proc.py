"""Shared helpers of the memory benchmarks (run as scripts: ``python benchmarks/<name>.py``)."""

from __future__ import annotations


def status(field: str) -> int:
    """``field`` of ``/proc/self/status`` (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")

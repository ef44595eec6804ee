"""Shared helpers of the memory benchmarks (run as scripts: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
               "TOKENIZERS_PARALLELISM": "false"}


def offline_env() -> None:
    """No hub call (one fails at once), quiet transformers, no tokenizer threads: call before importing famlib."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def status(field: str) -> int:
    """``field`` of ``/proc/self/status`` (VmRSS, VmHWM, ...) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")

"""Where outputs land. Defaults are inside the repository; environment variables move them (tests, clusters)."""

from __future__ import annotations

import os
from pathlib import Path

from famlib.config import REPO_ROOT


def runs_root() -> Path:
    """``$FAMLIB_RUNS`` or ``<repo>/runs``: per scale, models, data, results, tables, executed notebooks."""
    return Path(os.environ.get("FAMLIB_RUNS", REPO_ROOT / "runs"))


def figures_root() -> Path:
    """``$FAMLIB_FIGURES`` or ``<repo>/figures``: per scale, every figure as PNG and PDF."""
    return Path(os.environ.get("FAMLIB_FIGURES", REPO_ROOT / "figures"))


def run_dir(scale: str) -> Path:
    return runs_root() / scale



def model_dir(scale: str, mid: str) -> Path:
    """``runs/<scale>/models/<model id>/`` (no validation; :func:`famlib.naming.model_path` validates the id)."""
    return run_dir(scale) / "models" / mid

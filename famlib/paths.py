"""Where outputs land: the whole ``runs/<scale>/`` layout, in one place. Defaults are inside the repository;
environment variables move them (tests, clusters).

::

    runs/<scale>/
        models/<model id>/          Hugging Face directories (base, tokenizer, every strategy's models)
        data/<set>/                 packed token sets (base, dense, <family>, <family>-replay)
        train/<model id>/           training runs: checkpoints, metrics.jsonl, best/, result.json
        evaluation/tasks/           the generated lm-eval task suite
        results/                    results.csv, interpolation.csv, dose.csv, items/, parts, layer_distance.csv
        interpolation/<point>/      the interpolation's models (removed once measured)
        dose/                       the dose-response study: models/, train/, points.csv, drift.csv
        tables/                     the paper's tables as Markdown and LaTeX
        notebooks/                  executed notebooks and their stamps
        report.md
"""

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


def models_dir(scale: str) -> Path:
    return run_dir(scale) / "models"


def model_dir(scale: str, mid: str) -> Path:
    """``runs/<scale>/models/<model id>/`` (no validation; :func:`famlib.naming.model_path` validates the id)."""
    return models_dir(scale) / mid


def data_dir(scale: str, name: str) -> Path:
    """A packed token set: ``base``, ``dense``, a family, or ``<family>-replay``."""
    return run_dir(scale) / "data" / name


def train_dir(scale: str, mid: str) -> Path:
    """A training run's folder (checkpoints, metrics, best weights) for model ``mid``."""
    return run_dir(scale) / "train" / mid


def tasks_dir(scale: str) -> Path:
    return run_dir(scale) / "evaluation" / "tasks"


def results_dir(scale: str) -> Path:
    return run_dir(scale) / "results"


def layer_distance_path(scale: str) -> Path:
    """Every model's relative distance to the base per layer (notebook 04 writes it, 07 reads it)."""
    return results_dir(scale) / "layer_distance.csv"


def interpolation_dir(scale: str) -> Path:
    return run_dir(scale) / "interpolation"


def dose_dir(scale: str) -> Path:
    return run_dir(scale) / "dose"


def tables_dir(scale: str) -> Path:
    return run_dir(scale) / "tables"


def notebooks_dir(scale: str) -> Path:
    return run_dir(scale) / "notebooks"


def report_path(scale: str) -> Path:
    return run_dir(scale) / "report.md"
